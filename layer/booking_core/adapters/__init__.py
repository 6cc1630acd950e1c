"""Adapters: the only code that talks to MySQL, Redis, Kafka, the payment provider and AWS."""

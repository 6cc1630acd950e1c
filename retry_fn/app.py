"""Placeholder until this function's issue lands: accepts its scheduled event and does nothing."""


def handler(event, context):
    return {"status": "not_implemented"}

"""The chaos run (`make chaos`): faults under load on a stack of its own, then the README's guarantees checked.

Never part of the Lambda layer: a developer and test tool, like the rest of infra/."""

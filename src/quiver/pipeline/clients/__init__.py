"""The client side of the external systems pipeline steps talk to (HTTP, AMQP, S3):
connection settings, credentials, pacing and the mapping of their failures onto retryable or
permanent errors, shared by a system's source and sink."""

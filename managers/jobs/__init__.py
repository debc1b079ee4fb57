"""The HTTP API's durable jobs: the store, the workers that read them, and the queue between."""

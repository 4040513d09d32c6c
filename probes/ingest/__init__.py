"""The ingest API's payload handling: body decoding, the batch format, its OpenAPI docs."""

"""One module per DynamoDB table; each keeps its table's conditional semantics in one place."""

"""serverless-openclaw: the domain and AWS adapters shared by every Lambda function and the bridge."""

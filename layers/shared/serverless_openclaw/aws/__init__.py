"""Adapters to AWS services. The only modules (with store/) that import boto3."""

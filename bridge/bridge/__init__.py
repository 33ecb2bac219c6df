"""The bridge: runs the OpenClaw gateway in the user's Fargate task, drains the Inbox, streams replies."""

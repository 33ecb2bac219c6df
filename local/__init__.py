"""The one-machine stack: AWS stand-ins, offline model and Telegram simulator, driven by template.yaml."""

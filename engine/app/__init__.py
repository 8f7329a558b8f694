"""The stream app: one asyncio process with the hub, supervisor, actions and consoles."""

"""Placeholder: this sandbox extension is not written yet."""


def handle(handler, method: str, path: str, query: dict) -> bool:
    return False

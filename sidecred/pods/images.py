"""Image references: the repository an image comes from, whatever its tag or digest."""

from __future__ import annotations


def image_repository(image: str) -> str:
    """An image reference without tag or digest, with Docker Hub's implicit names spelled out."""
    name = image.strip().split("@", 1)[0]
    head, _, last = name.rpartition("/")
    name = (head + "/" if head else "") + last.split(":", 1)[0]
    parts = name.split("/")
    if len(parts) == 1:
        parts = ["docker.io", "library", *parts]
    elif not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = ["docker.io", *parts]
    return "/".join(parts).lower()

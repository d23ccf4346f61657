"""The upload box's form body (multipart/form-data), read with the standard library's MIME parser.

Starlette parses forms through the optional ``python-multipart`` package,
which the stack does not install; one file field is all the app takes, and
``email``'s parser reads it.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser


class UploadError(ValueError):
    """The request carries no file, or one too large; the message says which."""


def read_upload(body: bytes, content_type: str, field: str = "file") -> tuple[str, bytes]:
    """(file name, bytes) of the form field ``field`` of a multipart/form-data body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise UploadError("send the file as a form upload (multipart/form-data)")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    for part in msg.iter_parts() if msg.is_multipart() else []:
        if part.get_param("name", header="content-disposition") == field:
            data = part.get_payload(decode=True) or b""
            if not data:
                break
            return part.get_filename() or "upload", data
    raise UploadError("no file in the upload: choose an image file first")

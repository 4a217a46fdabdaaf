"""Bounded capture of a child's output stream, shared by exec (supervisor.py) and shell (shell_runner.py)."""

import codecs


class Capture:
    """One output stream of one execution or shell command, decoded as UTF-8 and cut at `limit` characters as
    it arrives: whatever the child writes, the memory held stays bounded."""

    __slots__ = ("room", "parts", "truncated", "decoder", "ended")

    def __init__(self, limit):
        self.room = limit
        self.parts = []
        self.truncated = False
        self.decoder = None
        self.ended = False

    def feed(self, data):
        """Adds a chunk of the stream; the text kept from it (what a streamed request is sent), "" if none."""
        if self.truncated or self.ended:
            return ""
        if self.decoder is None:
            self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        cut = len(data) > self.room * 4 + 4  # a character is at most 4 bytes: decode no more than can fit
        if cut:
            data = data[: self.room * 4 + 4]
        text = self._add(self.decoder.decode(data))
        if cut:
            self.truncated = True
        return text

    def _add(self, text):
        if len(text) > self.room:
            text = text[: self.room]
            self.truncated = True
        self.room -= len(text)
        if text:
            self.parts.append(text)
        return text

    def end(self):
        """The stream has ended: decodes what is left of an incomplete character; the text kept from it."""
        if self.ended:
            return ""
        self.ended = True
        if self.decoder is not None and not self.truncated:
            return self._add(self.decoder.decode(b"", True))
        return ""

    def finish(self):
        self.end()
        return "".join(self.parts), self.truncated

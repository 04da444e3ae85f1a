"""NETCONF ``<rpc-error>`` as a Python exception (RFC 6241 section 4.3 and appendix A)."""

from __future__ import annotations

from lxml import etree

from spmp.bts.model import BTS_NS, NC_NS

__all__ = ["NetconfError"]


class NetconfError(Exception):
    """An error to report as ``<rpc-error>``: error-type, error-tag, and optionally path, message and info."""

    def __init__(
        self,
        tag: str,
        message: str,
        *,
        error_type: str = "application",
        path: str | None = None,
        app_tag: str | None = None,
        info: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.error_type = error_type
        self.path = path
        self.app_tag = app_tag
        self.info = info or {}

    def to_xml(self) -> etree._Element:
        """The ``<rpc-error>`` element (in the base namespace; error-path uses the ``bts`` prefix)."""
        nc = f"{{{NC_NS}}}"
        err = etree.Element(nc + "rpc-error", nsmap={None: NC_NS})
        etree.SubElement(err, nc + "error-type").text = self.error_type
        etree.SubElement(err, nc + "error-tag").text = self.tag
        etree.SubElement(err, nc + "error-severity").text = "error"
        if self.app_tag:
            etree.SubElement(err, nc + "error-app-tag").text = self.app_tag
        if self.path:
            # The path's prefix must be bound where error-path is (RFC 6241 4.3).
            etree.SubElement(err, nc + "error-path", nsmap={"bts": BTS_NS}).text = self.path
        message = etree.SubElement(err, nc + "error-message")
        message.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        message.text = self.message
        if self.info:
            info = etree.SubElement(err, nc + "error-info")
            for name, value in self.info.items():
                etree.SubElement(info, nc + name).text = value
        return err

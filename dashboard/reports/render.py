"""A report's content to an HTML e-mail (images as cid: parts) and a PDF (WeasyPrint).

Both come from one template with the same numbers and the same PNG charts; only the image
sources differ. WeasyPrint may read nothing but the data: URIs we give it (no network, no
files), so a report renders the same on a machine without internet.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from django.template.loader import render_to_string

from dashboard.reports.content import REPORT_WIDTH_PX, ReportContent
from dashboard.reports.images import figures_to_png


@dataclass(frozen=True)
class RenderedReport:
    subject: str
    html_email: str
    text_email: str
    pdf: bytes
    images: dict[str, bytes]  # PNG by name; the e-mail's cid: ids are these names


def report_render(content: ReportContent) -> RenderedReport:
    images = figures_to_png(content.figures, width=REPORT_WIDTH_PX)
    base = {"report": content, "sections": content.sections}
    email_sources = {name: f"cid:{name}" for name in images}
    pdf_sources = {
        name: "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        for name, png in images.items()
    }
    html_email = render_to_string("reports/report.html", {**base, "src": email_sources})
    html_pdf = render_to_string("reports/report.html", {**base, "src": pdf_sources, "pdf": True})
    text_email = render_to_string("reports/report.txt", base)
    return RenderedReport(
        subject=content.title,
        html_email=html_email,
        text_email=text_email,
        pdf=html_to_pdf(html_pdf),
        images=images,
    )


def html_to_pdf(html: str) -> bytes:
    import weasyprint
    from weasyprint.urls import URLFetcher

    # data: only; a missing image stops the render instead of leaving a hole in the PDF.
    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    pdf: bytes = weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
    return pdf

"""Reports: the fleet numbers and charts as an HTML e-mail and a PDF, kept in an archive.

`content` gathers what a report says (sections; the assessment section plugs in there),
`images` renders its Plotly figures to PNG with kaleido driving the local Chromium, `render`
turns content + images into the e-mail HTML (images as cid: parts) and the PDF (WeasyPrint,
images inline), `services` stores and sends them, `dashboard.tasks` schedules them.
"""

"""Server-rendered pages, Plotly figures and scheduled reports; nothing imports this app."""

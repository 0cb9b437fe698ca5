"""The line-side dashboard: a read-only web page over a running line (`lineside run --dashboard`) or a
recorded results log (`lineside review`). The web framework (Starlette + uvicorn) is imported only when a
page is served: `pip install 'lineside[dashboard]'`."""

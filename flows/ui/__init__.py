"""``synthgen ui``: a read-only web app over the catalog (server-rendered pages, no JavaScript build).

One module per job: ``config`` (what the app is given), ``index`` (a
version's gallery index, built once), ``gallery`` (a page of it),
``thumbs`` (thumbnails made once, cached), ``samples`` (a sample's page:
rows, evidence, links), ``versions`` (the front page and a version's
summary), ``card`` (the card as HTML), ``finder`` (text search and the
upload box), ``upload`` (the form body), ``routes`` (the pages), ``app``
(the wiring: ``create_app``). It reads the catalog only through
``catalog``'s public API and DuckDB over the shards, and never imports
Prefect or MLflow: their UIs are linked by URL. Nothing is imported here,
so the CLI can read ``flows.ui.config`` without loading the app.
"""

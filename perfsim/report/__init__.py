"""Reports: folder safety, the run report (CSV, JSON, plots), compare and sweep reports, terminal text and HTML."""

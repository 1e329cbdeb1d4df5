"""Reports: DataFrames rendered for terminals, files and browsers."""

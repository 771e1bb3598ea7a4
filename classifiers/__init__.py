"""Model files (no pickle), the scripts that train them and their model cards."""

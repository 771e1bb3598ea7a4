"""De-identification: the live-image mask and keyed pseudonyms."""

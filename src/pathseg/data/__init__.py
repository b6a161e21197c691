"""Data sets in pathseg's canonical layout, converters from public releases, splits and tile datasets."""

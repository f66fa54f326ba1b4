"""The version of jobtree."""
__version__ = "0.1.0"

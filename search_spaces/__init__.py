"""Search spaces shipped with attn-search, as YAML files.

Installed as ``attn_search.search_spaces``.
"""

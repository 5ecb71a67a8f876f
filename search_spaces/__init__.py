"""Search spaces shipped with attn-search, as YAML files (installed as ``attn_search.search_spaces``)."""

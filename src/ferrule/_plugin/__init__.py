"""In-process plugins: ``Plugin`` and its live core (plugin.py), and
``PluginHost``, the host that shares services and interfaces between the
plugins it loads (host.py)."""

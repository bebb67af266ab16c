"""In-process plugins: ``Plugin`` and its live core (plugin.py). ``PluginHost``
(../_host.py) shares services and interfaces between the plugins it loads."""

"""The command line: ``watcher run|once|check-config|status|…`` (``commands``) and the JSON
Schemas it prints (``schema``). Parses, loads, calls the app; the top of the layers.
"""

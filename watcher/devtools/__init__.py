"""Developer tools shipped with the package, apart from the product: the Mistral API
simulator (``simulator``), a signature-checking webhook receiver (``receiver``) and
``watcher demo`` (``demo``). They may import the app; nothing of the product imports them.
"""

"""The phone app of label requests: a small aiohttp server (HTTP + WebSocket) and its page.

Layers: ``store`` (pending requests, answers, expiry, persistence; no I/O but one JSON file),
``server`` (aiohttp in its own thread and event loop; token check; WebSocket protocol),
``page`` (the self-contained phone-first HTML; pictures are decoded and PNG-encoded by the one
decoder, ``tinycl_nodes.images``),
``pairing`` (token, URL, terminal QR code). The node that wires it to the bus is
``tinycl_nodes.nodes.label_app``.
"""

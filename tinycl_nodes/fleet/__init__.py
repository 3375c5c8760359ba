"""Fleet learning over MQTT: wire format, secured mosquitto, link, aggregator (see docs/fleet.md).

- ``payload``    — versioned head payload (pydantic metadata + little-endian float32 weights)
- ``messages``   — Head bus messages ⇄ core HeadSnapshot
- ``link``       — one paho-mqtt 2.x connection: TLS, persistent session, backoff, latest-value publish
- ``broker``     — generated CA/certs/passwords/ACL/mosquitto.conf and a broker runner
- ``aggregator`` — rounds of class-aware aggregation (``tinycl aggregate``, also a node)
- ``bench``      — aggregation time and heads/s through mosquitto with TLS

The merge policy itself is pure numpy in ``tinycl_nodes.core.federated``; the device-side node is
``tinycl_nodes.nodes.mqtt_bridge``.
"""

"""The alert engine (``meltemi alerts``): rules over the stored readings, CAP 1.2 messages out.

It imports ``sensors`` only (never ``api`` or ``ingest``): rules and machines are pure
(``alerts.rules``, ``alerts.machine``, ``alerts.engine``), I/O lives in ``alerts.store``
(InfluxDB v1 API), ``alerts.statefile`` and ``alerts.service`` (the timer and MQTT).
"""

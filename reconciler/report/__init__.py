"""Reporting adapters: how a device tells the world its status (MQTT today).

The lead moves ``status``, ``statushttp`` and ``logs`` here later; until then they are
imported as ``reconciler.report.status`` etc.
"""

"""The impCloud stub: store, device link over MQTT, factory flow rules, REST API."""

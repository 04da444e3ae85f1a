"""The device side of LwM2M: the object tree a client exposes and the engine that talks to servers."""

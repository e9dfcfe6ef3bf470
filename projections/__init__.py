"""The read side: projection runner with exactly-once tracking, the live engine view,
the event/audit feed, replay and time travel.

May import ``domain`` (and the log from ``commands.store``); never ``history`` or ``api``.
"""

#!/usr/bin/python3
"""A desktop notification server for kited's end-to-end tests.

Owns org.freedesktop.Notifications on the bus in DBUS_SESSION_BUS_ADDRESS (a private
dbus-daemon the test started) and implements the spec's Notify, GetCapabilities,
GetServerInformation and CloseNotification. Every Notify call is appended to --log as one JSON
line (id, app_name, summary, body, actions, hints, timeout, sender), flushed at once.

The test drives it over D-Bus with the extra interface org.kited.Test:
  InvokeAction(u id, s key)  emits ActionInvoked(id, key), as a click on a button does
  Close(u id)                emits NotificationClosed(id, 2), as a dismissal does
`notification_server.py --invoke ID KEY` is a client that calls InvokeAction on the running
server and exits (so the tests need no dbus-send).

--hang accepts Notify calls (and logs them) but never answers them: a wedged notification
service. Everything else keeps working, so the test can still read the log.

Needs python3-dbus and python3-gi (Debian packages of those names).
Prints "ready" on stdout once the name is owned.
"""

import argparse
import json
import os
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
IFACE = "org.freedesktop.Notifications"
TEST_IFACE = "org.kited.Test"


def plain(value):
    """dbus-python values as JSON-friendly Python values."""
    if isinstance(value, (dbus.Boolean,)):
        return bool(value)
    if isinstance(value, (dbus.Byte, dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16,
                          dbus.UInt32, dbus.UInt64)):
        return int(value)
    if isinstance(value, dbus.Double):
        return float(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath, dbus.Signature, str)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return repr(value)


class Server(dbus.service.Object):
    def __init__(self, bus, log_path, hang):
        super().__init__(bus, PATH)
        self.log = open(log_path, "a", encoding="utf-8")
        self.hang = hang
        self.next_id = 1
        # Unanswered calls in --hang mode, kept so they are never answered nor dropped.
        self.pending = []

    def record(self, entry):
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()
        os.fsync(self.log.fileno())

    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u",
                         sender_keyword="sender", async_callbacks=("reply", "error"))
    def Notify(self, app_name, replaces_id, app_icon, summary, body, actions, hints,
               expire_timeout, sender=None, reply=None, error=None):
        if replaces_id:
            nid = int(replaces_id)
        else:
            nid = self.next_id
            self.next_id += 1
        self.record({
            "id": nid,
            "app_name": str(app_name),
            "app_icon": str(app_icon),
            "summary": str(summary),
            "body": str(body),
            "actions": [str(a) for a in actions],
            "hints": plain(hints),
            "timeout": int(expire_timeout),
            "sender": str(sender),
            "answered": not self.hang,
        })
        if self.hang:
            self.pending.append((reply, error))
            return
        reply(dbus.UInt32(nid))

    @dbus.service.method(IFACE, in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["actions", "body"]

    @dbus.service.method(IFACE, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("kited-test-notifications", "kited", "1.0", "1.2")

    @dbus.service.method(IFACE, in_signature="u", out_signature="")
    def CloseNotification(self, nid):
        self.record({"closed": int(nid)})
        self.NotificationClosed(nid, dbus.UInt32(3))

    @dbus.service.signal(IFACE, signature="us")
    def ActionInvoked(self, nid, action_key):
        pass

    @dbus.service.signal(IFACE, signature="uu")
    def NotificationClosed(self, nid, reason):
        pass

    @dbus.service.method(TEST_IFACE, in_signature="us", out_signature="")
    def InvokeAction(self, nid, action_key):
        self.ActionInvoked(dbus.UInt32(nid), action_key)

    @dbus.service.method(TEST_IFACE, in_signature="u", out_signature="")
    def Close(self, nid):
        self.NotificationClosed(dbus.UInt32(nid), dbus.UInt32(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="file to append one JSON line per Notify")
    parser.add_argument("--hang", action="store_true", help="never answer Notify")
    parser.add_argument("--invoke", nargs=2, metavar=("ID", "KEY"),
                        help="as a client: click button KEY of notification ID, then exit")
    args = parser.parse_args()

    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        sys.exit("notification_server: DBUS_SESSION_BUS_ADDRESS is not set")
    if args.invoke:
        bus = dbus.bus.BusConnection(address)
        server = bus.get_object(NAME, PATH)
        server.InvokeAction(dbus.UInt32(int(args.invoke[0])), args.invoke[1],
                            dbus_interface=TEST_IFACE, timeout=10)
        return
    if not args.log:
        parser.error("--log is required")

    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    server = Server(bus, args.log, args.hang)
    name = dbus.service.BusName(NAME, bus=bus, do_not_queue=True)
    loop = GLib.MainLoop()
    # The test kills this process; end quietly when the bus goes away too.
    bus.call_on_disconnection(lambda _conn: loop.quit())
    print("ready", flush=True)
    try:
        loop.run()
    finally:
        del name, server


if __name__ == "__main__":
    main()

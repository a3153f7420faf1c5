"""The local web UI (`rms ui`, docs/webui.md): one accessible page over the control API.

It listens on 127.0.0.1 or ::1 only, reads everything through the control API client as the
user who started it (so the control socket's SO_PEERCRED policy still decides), and never
holds a key. `render` draws the page and its chart, `app` serves it.
"""

"""Who is asking: the name of the bearer's API key (managers/api_keys.py).

With no key made yet the API answers this machine only (loopback clients, as "local"), so
a fresh install is usable from its own shell and still closed to the network; once a key
exists every request needs one.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from managers.api_keys import RESERVED
from models.errors import Unauthorized
from models.i18n import _

LOCAL_OWNER = RESERVED


def loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine; an IPv4 client of a server bound on ``::`` comes as
    ``::ffff:127.0.0.1``."""
    try:
        address = ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def owner(request: Request) -> str:
    """The request's owner, as the gate (routes/gate.py) found it before the body was read."""
    return getattr(request.state, "owner", None) or authenticate(request)


def authenticate(request: Request) -> str:
    keys = request.app.state.keys
    scheme, _sep, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        name = keys.owner(token.strip())
        if name is None:
            raise Unauthorized(_("The API key is not valid; ask for a new one (cli.py api-key create NAME on the "
                                 "server)."))
        return name
    if not keys.any():
        if loopback(request.client.host if request.client else None):
            return LOCAL_OWNER
        raise Unauthorized(_("This API has no keys yet, so it answers only its own machine; create one with cli.py "
                             "api-key create NAME and send it as Authorization: Bearer KEY."))
    raise Unauthorized(_("The request has no API key; send it as Authorization: Bearer KEY."))

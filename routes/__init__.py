"""The HTTP API's routes (api.py builds the app from them): each module one part of it."""

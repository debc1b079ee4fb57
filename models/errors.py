"""Domain errors. Each carries one sentence a person can act on, raised as a ``Message``
(models/i18n.py): ``str(error)`` is its English text, ``translate(error, lang)`` the text in the
reader's language. The UI and the CLI show that and never a traceback."""

from models.i18n import Message


class ChatVLMError(Exception):
    """Base of every failure the user is meant to read."""

    @property
    def message(self) -> Message:
        """The sentence as a Message (one raised with plain text becomes an untranslated one)."""
        first = self.args[0] if self.args else None
        return first if isinstance(first, Message) else Message(str(self))


class ConfigError(ChatVLMError):
    """config.yaml (or the file CHATVLMLLM_CONFIG names) is missing or invalid."""


class InputError(ChatVLMError):
    """The uploaded document cannot be read: empty, damaged, too large, wrong type."""


class EngineError(ChatVLMError):
    """An engine failed to read a page; other pages are not affected."""


class NotAvailable(ChatVLMError):
    """A model cannot run in the chosen mode on this machine; the text says why and what to do."""


class SwitchError(ChatVLMError):
    """A model container could not be started or stopped; ``log_tail`` holds its last lines."""

    def __init__(self, message: Message, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail


class StillBusy(SwitchError):
    """A server still ran requests when the switch's wait for them ended: the switch is refused
    and the server left as it was, since a sleep or a stop would cut them."""


class Superseded(ChatVLMError):
    """A newer switch request for another model overtook this one before it began."""


class Cancelled(ChatVLMError):
    """The user cancelled a switch, a load or a document; what was finished is kept."""


class NothingToExport(ChatVLMError):
    """The chosen export would be empty, e.g. CSV of a document without tables."""


class HistoryError(ChatVLMError):
    """The run history cannot be used (an unwritable data dir) or has no such run."""


class HistoryDamaged(HistoryError):
    """SQLite says the history database is not a database or is malformed; it is left as it is."""


class ExportError(ChatVLMError):
    """One document could not be written in the chosen format; the other documents are."""


class JobError(ChatVLMError):
    """An API job cannot be found or used, or the job store cannot be used."""


class Busy(ChatVLMError):
    """The job queue, or an API key's share of it, is full; ``retry_after`` says when to try again."""

    def __init__(self, message: Message, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(InputError):
    """A request past the API's limits: too many bytes or pages."""


class Unauthorized(ChatVLMError):
    """A request to the API without a valid API key."""

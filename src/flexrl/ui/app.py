"""``flexrl ui``: the control room as one object: the live view, the episode loop and the app serving both."""

from __future__ import annotations

from flexrl.agent.instruction_http import InstructionServer
from flexrl.agent.session import UI_PORT, RunConfig
from flexrl.ui.live import LiveView
from flexrl.ui.routes import add_ui_routes
from flexrl.ui.session import LiveSession


class ControlRoom:
    """The page at :attr:`url`, its episodes running from the moment it starts, until :meth:`close`.

    Args:
        cfg: the first episode's settings; ``http_port`` (None: :data:`UI_PORT`), ``http_host`` and
            ``http_token`` say where and how the page is served.
        realtime: pace the episodes at 20 control steps/s (False: as fast as they go).
        choices: the config group choices ``cfg`` was composed from, shown on the page.

    Raises:
        ValueError: one line, for a port that cannot be served or a non-loopback host without a token.
    """

    def __init__(self, cfg: RunConfig, realtime: bool = True, choices: dict[str, str] | None = None) -> None:
        self.view = LiveView()
        self.session = LiveSession(cfg, self.view, realtime, choices)
        port = UI_PORT if cfg.http_port is None else cfg.http_port
        self.server = InstructionServer(port, self.session.submit, None, cfg.http_host, cfg.http_token,
                                        extend=lambda app: add_ui_routes(app, self.view, cfg.experiment.workspace, self.session))
        self.session.start()

    @property
    def url(self) -> str:
        """The page's URL."""
        return f"{self.server.base_url}/"

    def close(self) -> None:
        """Stop the episode loop and the server."""
        self.session.close()
        self.server.close()

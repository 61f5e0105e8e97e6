"""Finding channel plugins through Python entry points, and opening one channel per agency with its settings."""

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points

from pydantic import ValidationError
from schemas.catalogue import Agency

from .channels import ChannelSetupError, DeliveryChannel

ENTRY_POINT_GROUP = "onestop.channels"

ChannelFactory = type[DeliveryChannel]  # type: ignore[type-arg]


class ChannelRegistry:
    """The channel plugins installed, by the name the catalogue's `[channel] type` uses."""

    def __init__(self, plugins: dict[str, Callable[[], ChannelFactory]]) -> None:
        self._plugins = plugins

    @classmethod
    def discover(cls, extra: Iterable[EntryPoint] = ()) -> "ChannelRegistry":
        found = [*entry_points(group=ENTRY_POINT_GROUP), *extra]
        return cls({ep.name: ep.load for ep in found})

    @property
    def types(self) -> list[str]:
        return sorted(self._plugins)

    def plugin(self, channel_type: str) -> ChannelFactory:
        if channel_type not in self._plugins:
            raise ChannelSetupError(
                f"no gateway plugin for channel type {channel_type!r} (installed: {', '.join(self.types)}); "
                f"install the package that provides it"
            )
        try:
            plugin = self._plugins[channel_type]()
        except Exception as error:
            raise ChannelSetupError(
                f"the plugin for channel type {channel_type!r} cannot be loaded ({type(error).__name__}: {error})"
            ) from error
        if not (isinstance(plugin, type) and issubclass(plugin, DeliveryChannel)):
            raise ChannelSetupError(f"the plugin for channel type {channel_type!r} is not a DeliveryChannel")
        return plugin

    def open(self, agency: Agency) -> DeliveryChannel:  # type: ignore[type-arg]
        """The agency's channel, its settings checked by the plugin; errors name the agency's file and field."""
        where = f"{agency.id}.toml"
        try:
            plugin = self.plugin(agency.channel.type)
        except ChannelSetupError as error:
            raise ChannelSetupError(f"{where}: {error}") from None
        try:
            settings = plugin.settings_model.model_validate(agency.channel.model_dump())
        except ValidationError as error:
            problems = "; ".join(f"channel.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ChannelSetupError(f"{where}: {problems}") from None
        try:
            return plugin(agency.id, settings)
        except ChannelSetupError as error:
            raise ChannelSetupError(f"{where}: {error}") from None

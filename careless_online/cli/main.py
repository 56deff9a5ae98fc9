"""The ``careless_online`` command: ``mono`` and ``poly`` merge; ``devices`` lists devices."""

import sys

from careless_online import __version__
from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser
from careless_online.cli.tf_runtime import import_tensorflow


def build_parser():
    """The top-level parser with its sub-commands."""
    from careless_online.cli import mono, poly

    parser = Parser(prog="careless_online", description="Online variational merging of serial crystallography data.")
    parser.add_argument("--version", action="version", version=f"careless_online {__version__}")
    parser.add_argument("--list-devices", action="store_true", help="list the CPU/GPU devices TensorFlow sees and exit")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    mono_parser = sub.add_parser("mono", help="merge monochromatic data (careless mono)", usage=mono.USAGE,
                                 description=mono.__doc__.split("\n\n")[0])
    mono.add_arguments(mono_parser)
    poly_parser = sub.add_parser("poly", help="merge Laue (polychromatic) data (careless poly)", usage=poly.USAGE,
                                 description=poly.__doc__.split("\n\n")[0])
    poly.add_arguments(poly_parser)
    devices = sub.add_parser("devices", help="list the CPU/GPU devices TensorFlow sees")
    devices.add_argument("--tf-debug", action="store_true", help="show TensorFlow's log messages")
    return parser


def list_devices(debug=False):
    """Print the devices TensorFlow can use, one per line."""
    tf = import_tensorflow(debug=debug)
    for device in tf.config.list_physical_devices():
        print(f"{device.device_type}: {device.name}")


@user_errors_exit
def main(argv=None):
    """Entry point of ``careless_online``."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.list_devices or args.command == "devices":
        list_devices(debug=getattr(args, "tf_debug", False))
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from careless_online.cli import mono, poly
    from careless_online.training.interrupt import SignalStop

    command = {"mono": mono, "poly": poly}[args.command]
    with SignalStop() as stop:
        command.run(args, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m zoo.pretrained list | show NAME | export RUN OUT --name NAME``."""

from __future__ import annotations

import argparse
import json
import sys

from zoo.pretrained import PretrainedError, card, export, folder, names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.pretrained", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the shipped pretrained models, with their test metrics")
    show = commands.add_parser("show", help="a model card")
    show.add_argument("name", help="a shipped name or a pretrained folder")
    make = commands.add_parser("export", help="turn a finished run folder into a pretrained one")
    make.add_argument("run", help="the run folder (summary.json, config.yaml, checkpoint.pt)")
    make.add_argument("out", help="the pretrained folder to write")
    make.add_argument("--name", required=True)
    make.add_argument("--description", default="A zoo model trained with the zoo.")
    make.add_argument("--command", dest="train_command", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in names():
                c = card(name)
                metrics = ", ".join(f"{k} {v:.4g}" for k, v in list(c["metrics"].items())[:3])
                kb = c["weights"]["bytes"] / 1024
                print(f"{name:20s} {c['model']} on {c['data']}, {kb:.0f} KB: {metrics}")
        elif args.command == "show":
            c = card(args.name)
            c["folder"] = str(folder(args.name))
            print(json.dumps(c, indent=2))
        else:
            out = export(
                args.run,
                args.out,
                name=args.name,
                description=args.description,
                command=args.train_command,
            )
            print(f"wrote {out}: load it with zoo.pretrained.load({str(out)!r})")
    except PretrainedError as error:
        print(f"zoo.pretrained: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

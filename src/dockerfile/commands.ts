// Instruction → typed Command, flags checked once (BuildKit's instructions/parse.go). The
// metadata commands are what `drydock build`, `import --change` and `commit --change` share;
// src/builder/dispatch.ts applies them to an image config.
import { DockerfileError } from './errors.js';
import { parseLine, type Instruction } from './parser.js';
import { checkInstruction } from './stages.js';

/** Instructions that only change the image config (no filesystem work). */
export const METADATA_KEYWORDS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'HEALTHCHECK', 'LABEL', 'MAINTAINER', 'ONBUILD', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'] as const;
export type MetadataKeyword = (typeof METADATA_KEYWORDS)[number];

export type MetadataCommand =
  | { kind: 'ENV' | 'LABEL'; inst: Instruction; args: string }
  | { kind: 'EXPOSE' | 'USER' | 'WORKDIR' | 'STOPSIGNAL' | 'MAINTAINER'; inst: Instruction; args: string }
  | { kind: 'CMD' | 'ENTRYPOINT' | 'VOLUME'; inst: Instruction; args: string; json?: string[] }
  | { kind: 'SHELL'; inst: Instruction; json: string[] }
  | { kind: 'HEALTHCHECK'; inst: Instruction; args: string; flags: Map<string, string | undefined> }
  | { kind: 'ONBUILD'; inst: Instruction; trigger: Instruction };

export function isMetadataKeyword(k: string): k is MetadataKeyword {
  return (METADATA_KEYWORDS as readonly string[]).includes(k);
}

/** The typed command for a metadata instruction; flags and argument shape are checked here. */
export function metadataCommand(file: string, inst: Instruction, escape = '\\'): MetadataCommand {
  checkInstruction(file, inst);
  const kind = inst.keyword;
  const err = (m: string) => new DockerfileError(file, inst.start, m);
  switch (kind) {
    case 'ENV': case 'LABEL': case 'EXPOSE': case 'USER': case 'WORKDIR': case 'STOPSIGNAL': case 'MAINTAINER':
      return { kind, inst, args: inst.args };
    case 'CMD': case 'ENTRYPOINT': case 'VOLUME':
      return { kind, inst, args: inst.args, ...(inst.json ? { json: inst.json } : {}) };
    case 'SHELL':
      if (!inst.json || inst.json.length === 0) throw err('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]');
      return { kind, inst, json: inst.json };
    case 'HEALTHCHECK':
      return { kind, inst, args: inst.args, flags: new Map(inst.flags.map((f) => [f.name, f.value])) };
    case 'ONBUILD': {
      const trigger = parseLine(inst.args.trim(), file, inst.argsPosition, escape);
      if (['ONBUILD', 'FROM', 'MAINTAINER'].includes(trigger.keyword)) throw err(`${trigger.keyword} isn't allowed as an ONBUILD trigger`);
      return { kind, inst, trigger };
    }
    default:
      throw err(`${kind} is not a metadata instruction`);
  }
}

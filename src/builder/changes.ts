// `docker import --change` / `docker commit --change`: Dockerfile metadata instructions applied
// to an image config through the builder's own dispatch (dispatch.ts), so a change and the same
// line in a Dockerfile give the same config or the same error. Variables expand against the
// config's Env, as in Docker's BuildFromConfig. The input config is not modified.
import type { ContainerConfig } from '../image/types.js';
import { parseLine, metadataCommand, Lexer, DockerfileError, ExpansionError } from '../dockerfile/index.js';
import { UserError } from '../util/errors.js';
import { dispatchMetadata, configEnv, type MetadataState } from './dispatch.js';

/** What Docker accepts in --change (its validCommitCommands). */
export const CHANGE_INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'HEALTHCHECK', 'LABEL', 'ONBUILD', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'] as const;

/** Applies `changes` (e.g. `CMD ["/bin/sh"]`, `ENV A=1`) to a copy of `config`. */
export function applyConfigChanges(config: ContainerConfig, changes: string[]): ContainerConfig {
  let state: MetadataState = { config: structuredClone(config), cmdSet: false };
  const lex = new Lexer();
  for (const change of changes) {
    const fail = (detail: string) => new UserError(`invalid change "${change}": ${detail}`);
    try {
      const text = change.trim();
      if (!/^[A-Za-z]+(\s|$)/.test(text)) throw fail('expected a Dockerfile instruction');
      const inst = parseLine(text, 'change', { line: 1, column: 1 });
      if (!(CHANGE_INSTRUCTIONS as readonly string[]).includes(inst.keyword)) {
        throw fail(`${inst.keyword} is not allowed (allowed: ${CHANGE_INSTRUCTIONS.join(', ')})`);
      }
      const cmd = metadataCommand('change', inst);
      state = dispatchMetadata(state, cmd, lex, configEnv(state.config)).state;
    } catch (e) {
      if (e instanceof DockerfileError) throw fail(e.detail);
      if (e instanceof ExpansionError) throw fail(e.message);
      if (e instanceof UserError && !e.message.startsWith('invalid change "')) throw fail(e.message);
      throw e;
    }
  }
  return state.config;
}

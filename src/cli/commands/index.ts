// One line per command module; each exports register(program). Keep imports light: heavy
// subsystem code is imported inside the action handlers.
import type { Command } from 'commander';
import { register as image } from './image.js';
import { register as build } from './build.js';
import { register as mkimage } from './mkimage.js';
import { register as boot } from './boot.js';
import { register as registryClient } from './registry-client.js';
import { register as registryServer } from './registry.js';
import { register as container } from './container.js';

export const COMMANDS: ((program: Command) => void)[] = [
  image,
  build,
  mkimage,
  registryClient,
  registryServer,
  boot,
  container,
];

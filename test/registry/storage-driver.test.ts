// The StorageDriver contract (storage-driver-suite.ts) run against every driver, one line each:
// the filesystem driver and the S3 driver on a real S3-API server (s3rver on 127.0.0.1).
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/env.js';
import { startS3Server, type S3Server } from '../helpers/s3.js';
import { FilesystemDriver } from '../../src/registry/storage/filesystem.js';
import { S3Driver, MIN_CHUNK_SIZE } from '../../src/registry/storage/s3.js';
import { storageDriverSuite } from './storage-driver-suite.js';

let s3: S3Server;
before(async () => { s3 = await startS3Server(); });
after(async () => { await s3?.stop(); });

storageDriverSuite('filesystem', () => new FilesystemDriver(tempDir('drydock-contract-fs-')));
// A fresh rootdirectory per suite keeps suites apart in one bucket; 5 MiB chunks (S3's minimum)
// and 3-key list pages make the multi-part and pagination paths run on small data.
storageDriverSuite('s3', () => new S3Driver({
  bucket: s3.bucket, regionEndpoint: s3.endpoint, accessKey: s3.accessKey, secretKey: s3.secretKey,
  rootDirectory: `/contract-${randomBytes(4).toString('hex')}`, chunkSize: MIN_CHUNK_SIZE, listPageSize: 3,
}));

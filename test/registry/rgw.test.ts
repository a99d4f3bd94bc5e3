// The S3 driver against a real distributed object store: a one-node Ceph cluster with a RADOS
// Gateway (test/helpers/ceph.ts), started once for this file. The driver contract table, what RGW
// does differently from s3rver (conditional writes, the ETag of CompleteMultipartUpload), chunked
// uploads resumed from the state in the bucket, and end to end: `drydock serve` on RGW, skopeo
// copy in and out, delete and `drydock registry gc`.
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { startCeph, type CephCluster } from '../helpers/ceph.js';
import { S3Driver, MIN_CHUNK_SIZE, type S3DriverOptions } from '../../src/registry/storage/s3.js';
import { storageDriverSuite } from './storage-driver-suite.js';

let ceph: CephCluster;
before(async () => { ceph = await startCeph(); }, { timeout: 180_000 });
after(async () => { await ceph?.stop(); });

function driverOptions(extra: Partial<S3DriverOptions> = {}): S3DriverOptions {
  return {
    bucket: ceph.bucket, regionEndpoint: ceph.endpoint, accessKey: ceph.accessKey, secretKey: ceph.secretKey,
    rootDirectory: `t-${randomBytes(4).toString('hex')}`, chunkSize: MIN_CHUNK_SIZE, ...extra,
  };
}

storageDriverSuite('s3 on Ceph RGW', () => new S3Driver(driverOptions({ listPageSize: 3 })));

/**
 * Plain aedes 2.0.0-beta.1 with in-memory persistence and Nagle off (like Spool's listener): the
 * baseline the benchmarks compare Spool with. Prints `{"port":N}` once listening; stops on SIGTERM.
 */
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const broker = await Aedes.createBroker()
const server = createServer((socket) => {
  socket.setNoDelay(true)
  broker.handle(socket)
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`)
})
process.once('SIGTERM', () => {
  server.close()
  broker.close(() => process.exit(0))
})

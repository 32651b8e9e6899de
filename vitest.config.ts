import { defineConfig } from 'vitest/config'
import { timeouts } from './src/experiment/timeouts.js'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'experiments',
          include: ['experiments/**/*.spec.ts'],
          // One kernel, one OOM at a time: the experiments share the machine's memory and kernel log.
          fileParallelism: false,
          isolate: false,
          // The specs' own waits fail first, with what they expected and saw.
          testTimeout: timeouts.testMs,
          hookTimeout: timeouts.testMs,
        },
      },
    ],
  },
})
